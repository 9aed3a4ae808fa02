"""What a run leaves: results.json and report.md (`markdown`), the `plots`, the speed-beside-accuracy table
(`trade`), and two runs side by side (`compare`)."""

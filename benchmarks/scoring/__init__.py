"""How right a case's labels are: `accuracy` (agreement with the reference, mIoU on a labelled set) and
`temporal` (flicker and mIoU over a clip)."""

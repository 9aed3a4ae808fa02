"""How a case is measured: the `timing` loops (where a frame is timed), a `camera`'s frame rate, the graph's
`tail`, the `resources` it takes, and the `machine` it ran on."""

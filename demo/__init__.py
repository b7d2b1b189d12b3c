"""Data generators for the demo, the tests and the benchmarks: realistic events, files and source rows
(with the irregularities real sources have). Tools, not assets: nothing here is part of the graph."""

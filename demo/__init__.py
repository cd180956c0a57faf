"""Local tooling shared by `make demo`, the tests and the benchmarks."""

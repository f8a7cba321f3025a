"""Cost benchmarks: side-by-side, interleaved timings with the machine they ran on."""

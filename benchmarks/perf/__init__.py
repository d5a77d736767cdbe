"""Performance benchmarks (run as modules; they print medians and ratios measured in one run)."""

"""Performance benchmarks of cardgate, each printed beside the limit it is measured against."""

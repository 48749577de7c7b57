"""Measuring tools behind tools/benchmark.py and tools/benchmark_data.py: torchvision twins of our models, a memory
sampler and a re-implemented PySlowFast decoder to compare against. Not model or data code: nothing in the package
imports this."""

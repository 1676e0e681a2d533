"""Fuzz the idx target of fuzz/targets.py: python fuzz/fuzz_idx.py -max_total_time=60"""

from _harness import main

if __name__ == "__main__":
    main("idx")

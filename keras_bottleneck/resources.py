"""What a stage cost: its peak memory, reported in its metrics."""
import resource
import sys


def peak_memory_mb():
    """Peak resident memory of this process so far, in MiB (ru_maxrss is kB on Linux, bytes
    on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)

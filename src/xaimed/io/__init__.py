"""Runtime plumbing: logging, threads and devices, checksummed files, GPU slots."""

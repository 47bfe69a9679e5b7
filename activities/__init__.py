"""Every side effect: DB writes, email/SMS/IVR. Built once in worker.py with their clients."""

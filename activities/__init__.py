"""Every side effect: DB writes, email/SMS/IVR. Built once in worker.py with their clients.

Every blocking (`def`) activity is declared `@activity.defn(no_thread_cancel_exception=True)`. Without it the SDK
cancels a thread activity by raising an exception inside its thread at whatever bytecode it runs: a local activity
past its timeout (the projection's 2 s), a worker shutting down. Raised inside `logging` between a handler's lock
and its release, it leaked the lock and every later log call waited on it: the whole worker stopped, timers and
pages with it (bench.worst_hour scale --open 10000 under load, 2 December 2026). Raised inside SQLAlchemy or
psycopg it can leave a pooled connection half-used. So cancellation is read at safe points (notify checks
`activity.is_cancelled()` before it sends), every call has its own timeout, and a cancelled attempt's late write is
harmless (writes are idempotent; a late projection never puts the row back: activities/projection.py).
tests/test_activity_defs.py holds every blocking activity to it.
"""

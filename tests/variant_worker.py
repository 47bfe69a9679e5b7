"""`python -m tests.variant_worker <variant>`: worker.py with a variant of the incident workflow, as a new build."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import worker
from tests.nondeterministic_incident import PausesFirst
from tests.patched_incident import AddsAStep
from workflows.incident import IncidentWorkflow

VARIANTS = {"adds-a-step": AddsAStep, "pauses-first": PausesFirst}

if __name__ == "__main__":
    variant = VARIANTS[sys.argv[1]]
    worker.WORKFLOWS[:] = [variant if w is IncidentWorkflow else w for w in worker.WORKFLOWS]
    asyncio.run(worker.main())
    # As worker.py does: skip interpreter finalization (temporalio/sdk-python#300).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

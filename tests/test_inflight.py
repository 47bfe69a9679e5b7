"""Pages in flight are cancelled in the order they started: each cancel is a workflow command, so the order
must be the same when a history is replayed in another worker process."""

from __future__ import annotations

from workflows.incident.ladder import InFlight


class Handle:
    def __init__(self, cancelled: list[int], n: int) -> None:
        self.cancelled, self.n = cancelled, n

    def cancel(self) -> bool:
        self.cancelled.append(self.n)
        return True


def test_cancel_order_is_start_order_not_object_identity() -> None:
    cancelled: list[int] = []
    handles = [Handle(cancelled, n) for n in range(40)]
    inflight = InFlight()
    started = list(reversed(handles))  # started in an order unrelated to where the objects sit in memory
    for handle in started:
        inflight.add(handle)  # type: ignore[arg-type]
    inflight.discard(started[3])  # type: ignore[arg-type]
    inflight.cancel_all()
    assert cancelled == [h.n for h in started if h is not started[3]]
    assert inflight.count == len(started) - 1

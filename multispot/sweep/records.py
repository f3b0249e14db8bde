"""Sweeps and arrays in the job store: one row per group, one per member (a trial or a task).

The rows are the job store's own (``Store.create_group``, ``add_member``, …), so sweeps run on
either backend, SQLite or PostgreSQL. A member row names the multispot job(s) it ran: it is
inserted *before* its job is created, with the job id already chosen, so a driver killed at any
point is replaced by one that finds the member and creates (or just follows) that same job,
never a second one.
"""

from __future__ import annotations

import time

from multispot.store import Group, GroupNotFound, Member, Store, open_store, owner_alive, owner_id

RUNNING, DONE, STOPPED = "running", "done", "stopped"
STALE_AFTER = 10.0  # seconds without a driver heartbeat before another may take the group over


class GroupStore:
    """The groups of one job store, with the driver's lease at a fixed staleness."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or open_store()

    # ----------------------------------------------------------------- groups

    def create(self, group: Group) -> None:
        self.store.create_group(group)

    def get(self, ref: str) -> Group:
        return self.store.get_group(ref)

    def groups(self, limit: int = 50) -> list[Group]:
        return self.store.groups(limit)

    def finish(self, group_id: str, state: str, message: str) -> None:
        self.store.finish_group(group_id, state, message)

    def set_message(self, group_id: str, message: str) -> None:
        self.store.set_group_message(group_id, message)

    # ----------------------------------------------------------------- the driver's lease

    def acquire(self, group_id: str, owner: str, stale_after: float = STALE_AFTER) -> bool:
        return self.store.acquire_group(group_id, owner, stale_after)

    def heartbeat(self, group_id: str, owner: str) -> bool:
        return self.store.heartbeat_group(group_id, owner)

    def release(self, group_id: str, owner: str) -> None:
        self.store.release_group(group_id, owner)

    def driver_alive(self, group_id: str, stale_after: float = STALE_AFTER) -> bool:
        group = self.get(group_id)
        return bool(
            group.owner
            and group.heartbeat
            and time.time() - group.heartbeat < stale_after
            and owner_alive(group.owner)
        )

    # ----------------------------------------------------------------- members

    def add_member(self, member: Member) -> Member:
        """Insert ``member``; if (group, n) exists already, the stored one is returned unchanged."""
        return self.store.add_member(member)

    def member(self, group_id: str, n: int) -> Member:
        return self.store.member(group_id, n)

    def members(self, group_id: str) -> list[Member]:
        return self.store.members(group_id)

    def add_job(self, group_id: str, n: int, job_id: str) -> None:
        """A member's next job (a trial restarted from scratch), recorded before it is created."""
        self.store.add_member_job(group_id, n, job_id)

    def set_outcome(
        self, group_id: str, n: int, outcome: str, message: str = "", value: float | None = None
    ) -> None:
        self.store.set_member_outcome(group_id, n, outcome, message, value)


__all__ = ["DONE", "RUNNING", "STOPPED", "Group", "GroupNotFound", "GroupStore", "Member", "owner_id"]

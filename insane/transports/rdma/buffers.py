"""Slots of registered memory for the RDMA transport: which are free, which are in use, and the
work-request ids that name them.

A region is registered once and cut into equal slots; a send takes a slot until its completion
comes back, a receive buffer is a slot posted to a queue pair. Each time a slot is taken its
generation goes up, and the work-request id carries both (``generation << 32 | slot``), so a
completion that arrives late for a slot since reused (after its connection failed, say) is
recognised as stale instead of freeing the slot's new user.
"""

from __future__ import annotations

_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_GENERATION_MASK = (1 << 29) - 1  # wr_id stays below bit 61 (rdma_verbs.SEND_FLAG is bit 62)


class SlotPool:
    """``count`` slots of ``size`` bytes, taken and given back by index."""

    __slots__ = ("_free", "_generation", "_owner", "count", "size")

    def __init__(self, count: int, size: int) -> None:
        if count <= 0 or size <= 0:
            raise ValueError("a pool needs at least one slot of at least one byte")
        self.count = count
        self.size = size
        self._free = list(range(count - 1, -1, -1))  # a stack: the warmest slot first
        self._generation = [0] * count
        self._owner: list[object | None] = [None] * count

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return self.count - len(self._free)

    def take(self, owner: object = True) -> int | None:
        """A free slot, now owned by ``owner``; None when every slot is in use."""
        if not self._free:
            return None
        slot = self._free.pop()
        self._generation[slot] = (self._generation[slot] + 1) & _GENERATION_MASK
        self._owner[slot] = owner
        return slot

    def wr_id(self, slot: int) -> int:
        """The work-request id of the slot's current use."""
        return self._generation[slot] << _SLOT_BITS | slot

    def owner(self, wr_id: int) -> object | None:
        """Who holds the slot a completion names, or None if the completion is stale."""
        slot = wr_id & _SLOT_MASK
        if slot >= self.count or self._owner[slot] is None:
            return None
        if self._generation[slot] != (wr_id >> _SLOT_BITS) & _GENERATION_MASK:
            return None
        return self._owner[slot]

    def give(self, slot: int) -> None:
        if not 0 <= slot < self.count or self._owner[slot] is None:
            raise ValueError(f"slot {slot} is not in use")
        self._owner[slot] = None
        self._free.append(slot)

    def release(self, wr_id: int) -> object | None:
        """A completion came for ``wr_id``: free its slot and return its owner (None, and
        nothing freed, when it is stale)."""
        owner = self.owner(wr_id)
        if owner is not None:
            self.give(wr_id & _SLOT_MASK)
        return owner

    def release_all(self, owner: object) -> int:
        """Free every slot ``owner`` holds (its connection is gone); how many."""
        n = 0
        for slot, o in enumerate(self._owner):
            if o is owner:
                self.give(slot)
                n += 1
        return n

    @staticmethod
    def slot_of(wr_id: int) -> int:
        return wr_id & _SLOT_MASK

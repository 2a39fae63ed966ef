"""Positions from fills: quantity, average entry price, realized and unrealized PnL, fees.

One `Position` per (venue, instr_id). Average-cost accounting: fills that add to the
position move the average price; fills that reduce it realize PnL against it; a fill
that crosses zero realizes the closed part and opens the rest at the fill price.
Fees are kept in quote currency (a fee charged in the base asset is converted at the
fill price) and are not netted into realized PnL.
"""

from __future__ import annotations


class Position:
    __slots__ = ("venue", "instr_id", "qty", "avg_px", "realized_pnl", "fees", "volume", "fills", "mark_px")

    def __init__(self, venue: int, instr_id: int) -> None:
        self.venue = venue
        self.instr_id = instr_id
        self.qty = 0.0
        self.avg_px = 0.0
        self.realized_pnl = 0.0
        self.fees = 0.0
        self.volume = 0.0
        self.fills = 0
        self.mark_px = 0.0

    def apply_fill(self, side: int, qty: float, px: float, fee_quote: float = 0.0) -> float:
        """Apply one fill (side +1 buy / -1 sell); return the PnL it realized."""
        signed = qty if side > 0 else -qty
        realized = 0.0
        q = self.qty
        if q == 0.0 or (q > 0) == (signed > 0):
            new_q = q + signed
            self.avg_px = (abs(q) * self.avg_px + qty * px) / abs(new_q)
            self.qty = new_q
        else:
            closing = min(abs(signed), abs(q))
            direction = 1.0 if q > 0 else -1.0
            realized = closing * (px - self.avg_px) * direction
            new_q = q + signed
            if abs(new_q) < 1e-12:
                self.qty = 0.0
                self.avg_px = 0.0
            elif (new_q > 0) != (q > 0):
                self.qty = new_q
                self.avg_px = px
            else:
                self.qty = new_q
        self.realized_pnl += realized
        self.fees += fee_quote
        self.volume += qty * px
        self.fills += 1
        return realized

    def unrealized_pnl(self, mark_px: float | None = None) -> float:
        m = self.mark_px if mark_px is None else mark_px
        if not self.qty or not m:
            return 0.0
        return self.qty * (m - self.avg_px)

    def __repr__(self) -> str:
        return (f"Position(venue={self.venue} instr={self.instr_id} qty={self.qty:.8g} avg_px={self.avg_px:.8g} "
                f"realized={self.realized_pnl:.8g} fees={self.fees:.8g})")


class PositionBook:
    """All positions. `get(venue, instr_id)` creates on first use."""

    def __init__(self) -> None:
        self._pos: dict[tuple[int, int], Position] = {}

    def get(self, venue: int, instr_id: int) -> Position:
        key = (int(venue), instr_id)
        p = self._pos.get(key)
        if p is None:
            p = self._pos[key] = Position(int(venue), instr_id)
        return p

    def apply_fill(self, venue: int, instr_id: int, side: int, qty: float, px: float, fee_quote: float = 0.0) -> float:
        return self.get(venue, instr_id).apply_fill(side, qty, px, fee_quote)

    def restore(self, venue: int, instr_id: int, qty: float, avg_px: float, realized_pnl: float = 0.0,
                fees: float = 0.0) -> Position:
        """Start a position from a persisted snapshot (a restart): fills after it apply on top."""
        p = self.get(venue, instr_id)
        p.qty = float(qty)
        p.avg_px = float(avg_px) if qty else 0.0
        p.realized_pnl = float(realized_pnl)
        p.fees = float(fees)
        return p

    def set_mark(self, venue: int, instr_id: int, mark_px: float) -> None:
        self.get(venue, instr_id).mark_px = mark_px

    def unrealized_pnl(self, venue: int, instr_id: int, mark_px: float | None = None) -> float:
        p = self._pos.get((int(venue), instr_id))
        return p.unrealized_pnl(mark_px) if p else 0.0

    def all(self) -> list[Position]:
        return list(self._pos.values())

    def totals(self) -> dict:
        return {"realized_pnl": sum(p.realized_pnl for p in self._pos.values()),
                "unrealized_pnl": sum(p.unrealized_pnl() for p in self._pos.values()),
                "fees": sum(p.fees for p in self._pos.values())}

    def __iter__(self):
        return iter(self._pos.values())

    def __len__(self) -> int:
        return len(self._pos)

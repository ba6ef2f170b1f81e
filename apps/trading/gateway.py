"""The order gateway moved into the engine (:mod:`apps.engine.risk.gateway`), where the one driver uses it.

This name stays only for :mod:`apps.control.selectors`, which orders the session and global states with
:class:`Mode`; it goes when the control app maps its states through its own vocabulary (issue 14, lifecycle).
"""

from apps.engine.risk.gateway import Mode, OrderGateway

__all__ = ["Mode", "OrderGateway"]

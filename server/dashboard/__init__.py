"""The operator dashboard (``tmc dashboard``): a web page over a registry that shows the
silos (each with its kept contribution values over versions), the versions with their
accuracy per round, the components and the audit log, and forgets or readmits a silo after
showing what that will do. Server-rendered HTML, no script,
nothing loaded from outside; every page needs an operator's
or a viewer's token of the admin API, and only an operator may act."""

from __future__ import annotations

from tmc.server.dashboard.app import create_app
from tmc.server.dashboard.errors import FormError, PlanChangedError
from tmc.server.dashboard.plans import ForgetPlan, ReadmitPlan, forget_plan, readmit_plan
from tmc.server.dashboard.session import COOKIE, Sessions
from tmc.server.dashboard.valuing import value_current
from tmc.server.dashboard.views import SiloValueRow, silo_values

__all__ = [
    "COOKIE",
    "ForgetPlan",
    "FormError",
    "PlanChangedError",
    "ReadmitPlan",
    "Sessions",
    "SiloValueRow",
    "create_app",
    "forget_plan",
    "readmit_plan",
    "silo_values",
    "value_current",
]

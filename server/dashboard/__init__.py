"""The operator dashboard (``tmc dashboard``): a web page over a registry that shows the
silos, the versions with their accuracy per round, the components and the audit log, and
forgets or readmits a silo after showing what that will do. Server-rendered HTML, no script,
nothing loaded from outside; every page needs an operator's
or a viewer's token of the admin API, and only an operator may act."""

from __future__ import annotations

from tmc.server.dashboard.app import create_app
from tmc.server.dashboard.errors import FormError, PlanChangedError
from tmc.server.dashboard.plans import ForgetPlan, ReadmitPlan, forget_plan, readmit_plan
from tmc.server.dashboard.session import COOKIE, Sessions

__all__ = [
    "COOKIE",
    "ForgetPlan",
    "FormError",
    "PlanChangedError",
    "ReadmitPlan",
    "Sessions",
    "create_app",
    "forget_plan",
    "readmit_plan",
]

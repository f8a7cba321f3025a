"""Both sides on one machine: the simulation harness (Flower's simulation engine runs the
ServerApp and one ClientApp per simulated silo), ``tmc simulate`` and ``tmc demo``.

This layer sits above ``tmc.server`` and ``tmc.client``, the only place besides the root
command that needs both; neither side imports it.
"""

from tmc.simulation.demo import demo
from tmc.simulation.harness import simulate
from tmc.simulation.run_options import with_run_config_options
from tmc.simulation.simulate_cmd import simulate_command

__all__ = ["demo", "simulate", "simulate_command", "with_run_config_options"]

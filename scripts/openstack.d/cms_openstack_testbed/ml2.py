"""An ML2 mechanism driver that binds every port at once.

Neutron's ML2 plugin asks its mechanism drivers to bind a port to a host when
Nova places a server's port there (binding:host_id). The real drivers (Open
vSwitch, Linux bridge, OVN) only do so when an agent of theirs runs on that host,
and the upstream test drivers only bind special host names: without agents every
binding fails and Nova cannot boot a server. This driver binds any port on any
host to the first segment offered, with VIF type ``ovs``, and marks the port
ACTIVE straight away, as an agent would once it had wired the port. Nova's fake
virt driver does not plug anything, so nothing more is needed.

Registered under the ``neutron.ml2.mechanism_drivers`` entry point as
``cms_bind_all`` (see pyproject.toml).
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    """Binds every port, to the first segment offered, as an OVS port."""

    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {
                    portbindings.CAP_PORT_FILTER: True,
                    portbindings.OVS_HYBRID_PLUG: False,
                },
                status=constants.PORT_STATUS_ACTIVE,
            )
            return

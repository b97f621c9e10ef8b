"""Pieces that let scripts/openstack run real OpenStack services on one machine.

- ``ml2``: a Neutron ML2 mechanism driver that binds every port, standing in for
  the network agents (Open vSwitch, OVN, ...) that a real cloud runs;
- ``wsgi``: loads an OpenStack web application for gunicorn.
"""

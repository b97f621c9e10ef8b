"""Loads an OpenStack web application for gunicorn.

Usage: CMS_OPENSTACK_WSGI=keystone.wsgi.api gunicorn ... cms_openstack_testbed.wsgi:application

The OpenStack applications parse the process's command-line arguments with
oslo.config when they are imported. Under gunicorn these are gunicorn's own
(-b, -w, --threads, ...), which oslo.config rejects: the worker then dies while
loading the application, gunicorn starts another, and requests hang. So clear
the arguments first, then import the module named by CMS_OPENSTACK_WSGI (one of
keystone.wsgi.api, placement.wsgi.api, glance.wsgi.api, neutron.wsgi.api,
nova.wsgi.osapi_compute) and hand on its ``application``. Each application
finds its configuration through its own variable (OS_KEYSTONE_CONFIG_DIR,
OS_PLACEMENT_CONFIG_DIR, OS_GLANCE_CONFIG_DIR, OS_NEUTRON_CONFIG_DIR,
OS_NOVA_CONFIG_DIR), which scripts/openstack sets.
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]

application = importlib.import_module(os.environ["CMS_OPENSTACK_WSGI"]).application

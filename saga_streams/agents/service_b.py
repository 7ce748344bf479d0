"""Service B: owns Account B ($500 at opening); adds, and removes as compensation.

``faust -A saga_streams.agents.service_b worker -l info --web-port 8002``
"""

from saga_streams.agents.participant import create_participant_app
from saga_streams.launch import lazy_app
from saga_streams.roles import PARTICIPANTS
from saga_streams.workflows import WORKFLOWS

__getattr__ = lazy_app(
    lambda settings: create_participant_app(PARTICIPANTS["service-b"], settings, WORKFLOWS)
)

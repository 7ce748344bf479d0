"""Service A: owns Account A ($1000 at opening); deducts, and refunds as compensation.

``faust -A saga_streams.agents.service_a worker -l info --web-port 8001``
"""

from saga_streams.agents.participant import create_participant_app
from saga_streams.launch import lazy_app
from saga_streams.roles import PARTICIPANTS
from saga_streams.workflows import WORKFLOWS

__getattr__ = lazy_app(
    lambda settings: create_participant_app(PARTICIPANTS["service-a"], settings, WORKFLOWS)
)

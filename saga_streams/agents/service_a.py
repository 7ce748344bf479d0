"""Service A: owns Account A ($1000 at opening); deducts, and refunds as compensation.

``faust -A saga_streams.agents.service_a worker -l info --web-port 8001``
"""

from saga_streams.agents.participant import create_participant_app
from saga_streams.roles import PARTICIPANTS

app = create_participant_app(PARTICIPANTS["service-a"])

"""Service C: owns the fee account C ($0 at opening); collects fees, and returns them as
compensation. It takes part in the ``transfer-with-fee`` workflow as step 3.

``faust -A saga_streams.agents.service_c worker -l info --web-port 8003``
"""

from saga_streams.agents.participant import create_participant_app
from saga_streams.launch import lazy_app
from saga_streams.roles import PARTICIPANTS
from saga_streams.workflows import WORKFLOWS

__getattr__ = lazy_app(
    lambda settings: create_participant_app(PARTICIPANTS["service-c"], settings, WORKFLOWS)
)

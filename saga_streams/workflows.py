"""The workflows this system runs, declared with the saga DSL (``saga/dsl.py``).

The seed's transfer, and the same transfer with a fee collected by service C. ``WORKFLOWS``
is the registry the roles are built with; a new workflow is declared here and added to it.
"""

from __future__ import annotations

from saga_streams.saga.dsl import FROM_ACCOUNT, TO_ACCOUNT, Registry, saga

__all__ = ["TRANSFER", "TRANSFER_WITH_FEE", "WORKFLOWS"]

#: The seed's money transfer: take from Account A, then give to Account B (or between any
#: account of service A and any of service B). The default.
TRANSFER = (
    saga("transfer", "Take the amount from an account of service A, then give it to one of B")
    .step("service-a", account=FROM_ACCOUNT)
    .invoke("deduct", topic="service-a-deduct")
    .with_compensation("refund", topic="service-a-refund")
    .step("service-b", account=TO_ACCOUNT)
    .invoke("add", topic="service-b-add")
    .with_compensation("remove", topic="service-b-remove")
    .build()
)

#: The same transfer with a 1% fee (at least a cent): the payer pays amount + fee, the payee
#: receives the amount, and the fee account C collects the fee as the third and last step.
TRANSFER_WITH_FEE = (
    saga("transfer-with-fee", "Transfer from A to B; A also pays a 1% fee into account C")
    .step("service-a", account=FROM_ACCOUNT)
    .invoke("deduct", topic="service-a-deduct", amount="amount+fee")
    .with_compensation("refund", topic="service-a-refund")
    .step("service-b", account=TO_ACCOUNT)
    .invoke("add", topic="service-b-add")
    .with_compensation("remove", topic="service-b-remove")
    .step("service-c", account="C")
    .invoke("collect", topic="service-c-collect", amount="fee")
    .with_compensation("return", topic="service-c-return")
    .build()
)

#: Every workflow, by name; a request that names none gets the transfer.
WORKFLOWS = Registry(TRANSFER, TRANSFER_WITH_FEE, default=TRANSFER.name)

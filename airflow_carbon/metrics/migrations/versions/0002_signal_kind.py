"""Add ``signal_kind`` (marginal or average emissions rate), filled in from ``signal``; no failed source is NULL.

``signal_kind`` is filled in by set-based UPDATEs with the mapping the code had when this revision
was written (``SIGNAL_DESCRIPTIONS`` of WattTime; Electricity Maps and the UK API give averages), so
an old row reads as a new one would have been written. ``failed_sources`` may be NULL, as in
``TaskTryRecord``; an empty list of failed sources becomes NULL, as the store now writes it.
SQLite cannot drop a NOT NULL in place: ``batch_alter_table`` copies the table there.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: ``watttime:<signal_type>`` -> kind, from ``signals/services/watttime.py`` at the time of this revision.
WATTTIME_SIGNAL_KINDS = {"co2_moer": "marginal", "co2_aoer": "average"}
#: Services whose every series (``<service>`` or ``<service>:<variant>``) is an average emissions rate.
AVERAGE_SERVICES = ("electricitymaps", "ukgrid")

task_try = sa.table("carbon_task_try", sa.column("signal", sa.String()), sa.column("signal_kind", sa.String()),
                    sa.column("failed_sources", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("carbon_task_try") as batch:
        batch.add_column(sa.Column("signal_kind", sa.String(), nullable=True))
        batch.alter_column("failed_sources", existing_type=sa.JSON(), nullable=True)
    signal = task_try.c.signal
    for signal_type, kind in WATTTIME_SIGNAL_KINDS.items():
        op.execute(task_try.update().where(signal == f"watttime:{signal_type}").values(signal_kind=kind))
    for service in AVERAGE_SERVICES:
        # substr, not LIKE: LIKE ignores case on SQLite and not on PostgreSQL.
        prefix = f"{service}:"
        op.execute(task_try.update()
                   .where(sa.or_(signal == service, sa.func.substr(signal, 1, len(prefix)) == prefix))
                   .values(signal_kind="average"))
    op.execute(task_try.update().where(sa.cast(task_try.c.failed_sources, sa.Text()) == "[]")
               .values(failed_sources=sa.null()))


def downgrade() -> None:
    op.execute(task_try.update().where(task_try.c.failed_sources.is_(None))
               .values(failed_sources=sa.literal_column("'[]'")))
    with op.batch_alter_table("carbon_task_try") as batch:
        batch.alter_column("failed_sources", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("signal_kind")

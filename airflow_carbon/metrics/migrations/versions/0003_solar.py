"""Add a site's shared solar: the record's ``site``, ``solar_served_by`` and ``solar_basis``, and the solar ledger.

Tasks of one site share its panels, so what each try planned on and really had lives in the store:
``carbon_solar_site`` (one row per site, the row its writers lock), ``carbon_solar_reservation`` (per
try and 60 s slot: its draw, the solar planned for it, the solar it used) and ``carbon_solar_output``
(per slot: the site's output, measured or forecast). Rows written before have no site: the new
columns stay NULL, as a version-2 record reads.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RECORD_COLUMNS = ("site", "solar_served_by", "solar_basis")
#: The key of a task try, as ``carbon_task_try`` has it.
KEY_COLUMNS = (("dag_id", sa.String(250)), ("task_id", sa.String(250)), ("run_id", sa.String(250)),
               ("map_index", sa.Integer()), ("try_number", sa.Integer()))


def upgrade() -> None:
    with op.batch_alter_table("carbon_task_try") as batch:
        for name in RECORD_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(), nullable=True))
    op.create_table(
        "carbon_solar_site",
        sa.Column("site", sa.String(250), nullable=False),
        sa.Column("peak_kw", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site"),
    )
    op.create_table(
        "carbon_solar_reservation",
        sa.Column("site", sa.String(250), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, kind, nullable=False) for name, kind in KEY_COLUMNS),
        sa.Column("draw_kw", sa.Float(), nullable=False),
        sa.Column("reserved_kw", sa.Float(), nullable=False),
        sa.Column("used_kw", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site", "slot_start", *(name for name, _ in KEY_COLUMNS)),
    )
    op.create_index("ix_carbon_solar_reservation_try", "carbon_solar_reservation",
                    [name for name, _ in KEY_COLUMNS])
    op.create_table(
        "carbon_solar_output",
        sa.Column("site", sa.String(250), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("output_kw", sa.Float(), nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site", "slot_start"),
    )


def downgrade() -> None:
    op.drop_table("carbon_solar_output")
    op.drop_index("ix_carbon_solar_reservation_try", table_name="carbon_solar_reservation")
    op.drop_table("carbon_solar_reservation")
    op.drop_table("carbon_solar_site")
    with op.batch_alter_table("carbon_task_try") as batch:
        for name in reversed(RECORD_COLUMNS):
            batch.drop_column(name)

"""Add a choice between regions: the chosen region's task, the baseline region, every candidate's expected
emissions, and the saving split into time and place.

The task try table gains ``home_region``, ``chosen_task_id``, ``region_expected_g`` (JSON: region to grams, null
where a candidate's signal failed), ``saved_time_g`` and ``saved_place_g``. Rows written before stay NULL there, as a
version-5 record reads: they chose no region. ``carbon_gated_energy`` gains ``home_emissions_g``: a task run after a
region choice, accounted on the home region's signal over the same interval, which splits the saving in two.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The record's new columns, as ``carbon_task_try`` has them.
RECORD_COLUMNS = (("home_region", sa.String()), ("chosen_task_id", sa.String()), ("region_expected_g", sa.JSON()),
                  ("saved_time_g", sa.Float()), ("saved_place_g", sa.Float()))


def upgrade() -> None:
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, kind in RECORD_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("carbon_gated_energy") as batch:
        batch.add_column(sa.Column("home_emissions_g", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("carbon_gated_energy") as batch:
        batch.drop_column("home_emissions_g")
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, _ in reversed(RECORD_COLUMNS):
            batch.drop_column(name)

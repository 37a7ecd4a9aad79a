"""Add how a try's energy was obtained and what its plan expected, and the energy of work a sensor gated.

The task try table gains ``energy_method``, ``energy_scope``, ``energy_breakdown_kwh``, ``energy_notes`` and ``pue``
(how ``energy_kwh`` was obtained), and ``expected_duration_s``, ``expected_energy_kwh`` and ``expected_from`` (what
the plan counted on, and where that came from). Rows written before stay NULL there, as a version-4 record reads:
their energy was declared or assumed, which the pages say of a row without a method. An index on
``(dag_id, task_id, ended_at)`` serves planning from a task's history. New table: ``carbon_gated_energy``, one row
per try of a task that ran after a ``CarbonAwareSensor`` let it, with the energy it drew; the sensor's record sums
them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The record's new columns, as ``carbon_task_try`` has them.
RECORD_COLUMNS = (("energy_method", sa.String()), ("energy_scope", sa.String()), ("energy_breakdown_kwh", sa.JSON()),
                  ("energy_notes", sa.JSON()), ("pue", sa.Float()), ("expected_duration_s", sa.Float()),
                  ("expected_energy_kwh", sa.Float()), ("expected_from", sa.String()))
HISTORY_INDEX = ("ix_carbon_task_try_dag_id_task_id_ended_at", ["dag_id", "task_id", "ended_at"])


def upgrade() -> None:
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, kind in RECORD_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index(HISTORY_INDEX[0], "carbon_task_try", HISTORY_INDEX[1])
    op.create_table(
        "carbon_gated_energy",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("sensor_task_id", sa.String(250), nullable=False),
        sa.Column("sensor_map_index", sa.Integer(), nullable=False),
        sa.Column("sensor_try_number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=False),
        sa.Column("energy_method", sa.String(), nullable=False),
        sa.Column("energy_scope", sa.String(), nullable=False),
        sa.Column("emissions_g", sa.Float(), nullable=True),
        sa.Column("baseline_emissions_g", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "task_id", "run_id", "map_index", "try_number"),
    )
    op.create_index("ix_carbon_gated_energy_sensor", "carbon_gated_energy",
                    ["dag_id", "run_id", "sensor_task_id", "sensor_map_index", "sensor_try_number"])


def downgrade() -> None:
    op.drop_index("ix_carbon_gated_energy_sensor", table_name="carbon_gated_energy")
    op.drop_table("carbon_gated_energy")
    op.drop_index(HISTORY_INDEX[0], table_name="carbon_task_try")
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, _ in reversed(RECORD_COLUMNS):
            batch.drop_column(name)

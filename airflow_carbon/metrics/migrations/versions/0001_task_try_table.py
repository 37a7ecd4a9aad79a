"""The task try table as ``create_all`` made it before migrations existed.

Stores from that time have this table and no version table: ``upgrade`` stamps them with this
revision instead of running it.

Revision ID: 0001
Revises: none
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TEXT_COLUMNS = ("region", "source", "signal", "policy")
DECISION_INSTANTS = ("ready_at", "deadline", "decided_at", "planned_start")
DECISION_FLOATS = ("expected_emissions_now_g", "expected_emissions_at_start_g")
COMPLETION_FLOATS = ("delay_s", "intensity_g_per_kwh", "baseline_intensity_g_per_kwh", "energy_kwh", "solar_kwh",
                     "grid_kwh", "emissions_g", "baseline_emissions_g", "saved_g")


def upgrade() -> None:
    op.create_table(
        "carbon_task_try",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        *(sa.Column(name, sa.String()) for name in TEXT_COLUMNS),
        *(sa.Column(name, sa.DateTime(timezone=True)) for name in DECISION_INSTANTS),
        sa.Column("reason", sa.String()),
        *(sa.Column(name, sa.Float()) for name in DECISION_FLOATS),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        *(sa.Column(name, sa.Float()) for name in COMPLETION_FLOATS),
        sa.Column("estimated", sa.Boolean()),
        sa.Column("served_by", sa.String()),
        sa.Column("failed_sources", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "task_id", "run_id", "map_index", "try_number"),
    )
    op.create_index("ix_carbon_task_try_state", "carbon_task_try", ["state"])
    op.create_index("ix_carbon_task_try_dag_id_ready_at", "carbon_task_try", ["dag_id", "ready_at"])


def downgrade() -> None:
    op.drop_index("ix_carbon_task_try_dag_id_ready_at", table_name="carbon_task_try")
    op.drop_index("ix_carbon_task_try_state", table_name="carbon_task_try")
    op.drop_table("carbon_task_try")

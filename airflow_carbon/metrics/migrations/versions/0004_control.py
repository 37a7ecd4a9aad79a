"""Add what people decide over the planner: releases, eco-mode-off switches, budgets, and the audit of them all.

The task try table gains ``released_by``, ``released_at`` and ``release_reason`` (who made a try run before its
plan, when and why); rows written before stay NULL there, as a version-3 record reads. New tables:
``carbon_release`` (one row per released try), ``carbon_eco_switch`` (per DAG, or ``*`` for all),
``carbon_budget`` (per DAG), ``carbon_budget_alert`` (per DAG and period it went over) and ``carbon_audit``.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The record's new columns, as ``carbon_task_try`` has them.
RECORD_COLUMNS = (("released_by", sa.String()), ("released_at", sa.DateTime(timezone=True)),
                  ("release_reason", sa.String()))
#: The key of a task try, as ``carbon_task_try`` has it.
KEY_COLUMNS = (("dag_id", sa.String(250)), ("task_id", sa.String(250)), ("run_id", sa.String(250)),
               ("map_index", sa.Integer()), ("try_number", sa.Integer()))


def upgrade() -> None:
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, kind in RECORD_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "carbon_release",
        *(sa.Column(name, kind, nullable=False) for name, kind in KEY_COLUMNS),
        sa.Column("released_by", sa.String(250), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint(*(name for name, _ in KEY_COLUMNS)),
    )
    op.create_table(
        "carbon_eco_switch",
        sa.Column("scope", sa.String(250), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("windows", sa.JSON(), nullable=True),
        sa.Column("set_by", sa.String(250), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "carbon_budget",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("grams", sa.Float(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("strict", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("set_by", sa.String(250), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("dag_id"),
    )
    op.create_table(
        "carbon_budget_alert",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_g", sa.Float(), nullable=False),
        sa.Column("budget_g", sa.Float(), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "period_start"),
    )
    op.create_table(
        "carbon_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(250), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("task_id", sa.String(250), nullable=True),
        sa.Column("map_index", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_carbon_audit_dag_id_at", "carbon_audit", ["dag_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_carbon_audit_dag_id_at", table_name="carbon_audit")
    for table in ("carbon_audit", "carbon_budget_alert", "carbon_budget", "carbon_eco_switch", "carbon_release"):
        op.drop_table(table)
    with op.batch_alter_table("carbon_task_try") as batch:
        for name, _ in reversed(RECORD_COLUMNS):
            batch.drop_column(name)

"""Sweeps and job arrays: one row per group, one per member (a trial or a task).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.Double


def upgrade() -> None:
    op.create_table(
        "sweep_groups",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("ended", TIME),
        sa.Column("owner", sa.Text),
        sa.Column("heartbeat", TIME),
    )
    op.create_index("sweep_groups_by_name", "sweep_groups", ["name", "created"])
    op.create_table(
        "sweep_members",
        sa.Column("group_id", sa.Text, sa.ForeignKey("sweep_groups.id"), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("jobs", JSONB, nullable=False),
        sa.Column("params", JSONB, nullable=False, server_default="{}"),
        sa.Column("outcome", sa.Text, nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("value", sa.Double),
        sa.Column("created", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sweep_members")
    op.drop_table("sweep_groups")

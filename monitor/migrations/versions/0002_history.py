"""fetch and delivery-attempt history, deliveries by time (the dashboard's pages)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import monitor.store

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fetch_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.String(), nullable=False),
    sa.Column('at', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('not_modified', sa.Boolean(), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('new', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_fetch_log_at', 'fetch_log', ['at'])
    op.create_index('ix_fetch_log_source_at', 'fetch_log', ['source_id', 'at'])
    op.create_table('delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(), nullable=False),
    sa.Column('at', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_delivery_attempts_at', 'delivery_attempts', ['at'])
    op.create_index('ix_delivery_attempts_delivery', 'delivery_attempts', ['delivery_id', 'at'])
    op.create_index('ix_deliveries_created_at', 'deliveries', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_deliveries_created_at', table_name='deliveries')
    op.drop_index('ix_delivery_attempts_delivery', table_name='delivery_attempts')
    op.drop_index('ix_delivery_attempts_at', table_name='delivery_attempts')
    op.drop_table('delivery_attempts')
    op.drop_index('ix_fetch_log_source_at', table_name='fetch_log')
    op.drop_index('ix_fetch_log_at', table_name='fetch_log')
    op.drop_table('fetch_log')

"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:01:55.581139
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import monitor.store


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('articles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.String(), nullable=False),
    sa.Column('guid', sa.String(), nullable=True),
    sa.Column('canonical_url', sa.String(), nullable=True),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('published', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('fetched_at', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('minhash', sa.String(), nullable=True),
    sa.Column('band0', sa.BigInteger(), nullable=True),
    sa.Column('band1', sa.BigInteger(), nullable=True),
    sa.Column('band2', sa.BigInteger(), nullable=True),
    sa.Column('band3', sa.BigInteger(), nullable=True),
    sa.Column('band4', sa.BigInteger(), nullable=True),
    sa.Column('band5', sa.BigInteger(), nullable=True),
    sa.Column('band6', sa.BigInteger(), nullable=True),
    sa.Column('band7', sa.BigInteger(), nullable=True),
    sa.Column('story_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('canonical_url', name='uq_article_canonical_url'),
    sa.UniqueConstraint('source_id', 'guid', name='uq_article_source_guid')
    )
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.create_index('ix_articles_band0_id', ['band0', 'id'], unique=False)
        batch_op.create_index('ix_articles_band1_id', ['band1', 'id'], unique=False)
        batch_op.create_index('ix_articles_band2_id', ['band2', 'id'], unique=False)
        batch_op.create_index('ix_articles_band3_id', ['band3', 'id'], unique=False)
        batch_op.create_index('ix_articles_band4_id', ['band4', 'id'], unique=False)
        batch_op.create_index('ix_articles_band5_id', ['band5', 'id'], unique=False)
        batch_op.create_index('ix_articles_band6_id', ['band6', 'id'], unique=False)
        batch_op.create_index('ix_articles_band7_id', ['band7', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_articles_fetched_at'), ['fetched_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_articles_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_articles_story_id'), ['story_id'], unique=False)

    op.create_table('disabled_endpoints',
    sa.Column('subscriber', sa.String(), nullable=False),
    sa.Column('target', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('disabled_at', monitor.store.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('subscriber')
    )
    op.create_table('sources',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('interval', sa.Float(), nullable=False),
    sa.Column('next_due', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(), nullable=True),
    sa.Column('lease_until', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('etag', sa.String(), nullable=True),
    sa.Column('last_modified', sa.String(), nullable=True),
    sa.Column('content_hash', sa.String(), nullable=True),
    sa.Column('last_attempt', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('last_success', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('items_seen', sa.Integer(), nullable=False),
    sa.Column('articles_total', sa.Integer(), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('failure_alerted', sa.Boolean(), nullable=False),
    sa.Column('failure_episodes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sources_next_due'), ['next_due'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('rule_id', sa.String(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.Column('subscriber', sa.String(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('target', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('created_at', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('sent_at', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(), nullable=True),
    sa.Column('lease_until', monitor.store.UTCDateTime(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule_id', 'story_id', 'subscriber',
                        name='uq_delivery_rule_story_subscriber')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_due', ['status', 'next_attempt'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_subscriber'), ['subscriber'], unique=False)

    op.create_table('matches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('rule_id', sa.String(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('created_at', monitor.store.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('article_id', 'rule_id', name='uq_match_article_rule')
    )
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_matches_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_matches_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_matches_rule_id'), ['rule_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_matches_rule_id'))
        batch_op.drop_index(batch_op.f('ix_matches_created_at'))
        batch_op.drop_index(batch_op.f('ix_matches_article_id'))

    op.drop_table('matches')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_subscriber'))
        batch_op.drop_index('ix_deliveries_due')

    op.drop_table('deliveries')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sources_next_due'))

    op.drop_table('sources')
    op.drop_table('disabled_endpoints')
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_articles_story_id'))
        batch_op.drop_index(batch_op.f('ix_articles_source_id'))
        batch_op.drop_index(batch_op.f('ix_articles_fetched_at'))
        batch_op.drop_index('ix_articles_band7_id')
        batch_op.drop_index('ix_articles_band6_id')
        batch_op.drop_index('ix_articles_band5_id')
        batch_op.drop_index('ix_articles_band4_id')
        batch_op.drop_index('ix_articles_band3_id')
        batch_op.drop_index('ix_articles_band2_id')
        batch_op.drop_index('ix_articles_band1_id')
        batch_op.drop_index('ix_articles_band0_id')

    op.drop_table('articles')


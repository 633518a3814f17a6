"""Dynamic partitions: one per crawl, one per bandit round."""

import dagster as dg

crawls_partitions = dg.DynamicPartitionsDefinition(name="crawls")
rounds_partitions = dg.DynamicPartitionsDefinition(name="rounds")

"""`strom console`: a web console for any Kafka cluster (topics, messages, groups, cluster,
ACLs, users, quotas).

A Kafka client application like the CLI: it talks to the cluster through confluent-kafka
(strom.console.kafka) and, for client quotas and sizes on storage, through the CLI's own
protocol client (strom.cli.wire_admin); it imports nothing of the broker, and serves
server-rendered HTML with a small hand-written script and stylesheet (strom/console/static) —
no CDN, no build step.
"""

from strom.console.app import ConsoleSettings, RunningConsole, build_app, start_in_thread

__all__ = ["ConsoleSettings", "RunningConsole", "build_app", "start_in_thread"]

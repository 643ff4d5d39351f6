"""A message's life in one place: decided at the send gate, rendered, sent through its channel's
gateway, its delivery and the recipient's actions recorded.

`gate` builds a campaign's send gate (stop lists, sending policies); `decisions` decides each
recipient's message; `rendering` renders a template version for one message; `worker` sends due
messages through any `senders.gateway.ChannelGateway`, and `email` is the email channel's part
of that; `deliveries` records what happens after. The package imports domain, projections,
infra and senders (the protocol adapters); what it reads of the services comes through `ports`.
"""

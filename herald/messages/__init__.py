"""A message's life in one place: decided at the send gate, rendered, sent through its channel's
gateway, its delivery and the recipient's actions recorded.

`gate` builds a campaign's send gate (stop lists, sending policies); `decisions` decides each
recipient's message; `rendering` renders a template version for one message and `queued` a
queued one again; `worker` sends due messages through any `senders.gateway.ChannelGateway`
(`routing` picks the sender), and `email`, `sms` and `push` are the channels' parts of that;
`deliveries` records what happens after. The package imports domain, projections,
infra and senders (the protocol adapters); what it reads of the services comes through `ports`.
"""

"""Violet's webhooks: the receiver a host mounts (`receive`), the signature (`signature`) and what
an event says (`events`). Receiving only makes an event durable in the inbox (store/inbox.py);
applying it to a checkout happens later, under the checkout's lease.
"""

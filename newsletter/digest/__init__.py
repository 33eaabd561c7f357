"""The weekly email digest, stage by stage; import the module you need (this package imports none of them).

- :mod:`~newsletter.digest.select`: periods, which stories a digest carries, its sections and subject. Pure.
- :mod:`~newsletter.digest.compose`: the messages, rendered once, filled in per recipient; css-inline's home.
- :mod:`~newsletter.digest.transports`: the outbox and SMTP transports; smtplib's home.
- :mod:`~newsletter.digest.send`: the delivery loop that sends each digest to each subscriber exactly once.
- :mod:`~newsletter.digest.job`: the digest job (make the due digest, deliver the open ones), preview, test-send.
"""

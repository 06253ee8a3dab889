"""Notifications: an outbox written with the change that causes it, delivered at least once
over in-app, WeCom and DingTalk robots, e-mail, webhooks and SMS."""

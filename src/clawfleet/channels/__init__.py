"""Talking to the claw: the commands every channel shares (`commands.py`), the HTTP webhook
(`webhook.py`) and the Telegram bot (`telegram.py`), which only map their input onto them."""

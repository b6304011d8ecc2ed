"""Scratch: keep a stack up for manual probing."""
import json, time, os
def test_hold(live_stack, make_live_user):
    a = make_live_user(); b = make_live_user()
    with open("/tmp/sec_stack.json", "w") as f:
        json.dump({"api": live_stack.api_url, "ws": live_stack.ws_url, "a": [a.username, a.password, a.account_id], "b": [b.username, b.password, b.account_id], "pids": {k: c.pid for k, c in live_stack.children.items()}, "logs": {k: str(c.log_path) for k, c in live_stack.children.items()}}, f)
    while not os.path.exists("/tmp/sec_stack.stop"):
        time.sleep(1)

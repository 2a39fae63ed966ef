"""Strategy API, order requests, the built-in market maker and the pinned strategy host loop. Never talks to sockets directly."""

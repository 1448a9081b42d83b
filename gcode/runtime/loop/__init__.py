"""The coordinator's loop: rounds of poll arrivals -> policy -> decision, on any transport."""

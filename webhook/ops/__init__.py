"""Operator tools: certificates, the Kubernetes objects that carry them, and their injection."""

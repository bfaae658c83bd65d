"""The admission service: what a pod becomes under the policy, and what it needs created first."""

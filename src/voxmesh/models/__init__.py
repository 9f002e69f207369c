"""voxmesh.models"""

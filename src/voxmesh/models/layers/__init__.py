"""voxmesh.models.layers"""

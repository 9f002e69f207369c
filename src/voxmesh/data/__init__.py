"""voxmesh.data"""

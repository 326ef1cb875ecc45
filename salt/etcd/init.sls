include: []
